"""The ingest component: a TFDS dataset, folder or manifest → sharded TFRecords (a Dataset)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.ops import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def ingest(data_config: str, dataset: Output[Dataset]):
    """Reads the configured source and writes train, validation and test as TFRecord shards.

    Args:
        data_config: DataConfig as JSON (source, dataset or path, class table, ignore
            values, split fractions, records_per_shard, bad_record_policy, ...).
        dataset: output directory: ``dataset.json`` plus ``<split>/`` shards. Its
            metadata repeats the facts later steps check: source, classes, ignore id,
            schema version, content fingerprint, per-split counts, skips and shards.
    """
    from components.ops import start_task

    start_task()
    from components.data import beam_ingest as step

    info = step.run(step.IngestInputs.of(data_config, dataset))
    dataset.metadata.update(info.to_metadata())
