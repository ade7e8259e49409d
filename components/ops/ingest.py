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
    from components.platform.failures import record_failures

    record_failures()  # an uncaught error names this task in the run-end report

    import logging

    from components.data.beam_ingest import ingest_with_engine
    from components.platform.config import DataConfig, section_from_json
    from components.platform.contracts import DatasetInfo
    from components.platform.retry import retry_transient

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = section_from_json(DataConfig, data_config)
    # Shards are written under temporary names, so a repeat after a dropped download is safe.
    info = retry_transient(lambda: ingest_with_engine(config, dataset.path), what="ingest")

    dataset.metadata.update(DatasetInfo.from_dict(info).to_metadata())
