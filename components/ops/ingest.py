"""The ingest component: a TFDS dataset → the project's sharded TFRecords (a Dataset)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.ops import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def ingest(data_config: str, dataset: Output[Dataset]):
    """Prepares the configured TFDS dataset and writes every split as TFRecord shards.

    Args:
        data_config: DataConfig as JSON (dataset, version, data_dir, manual_dir,
            download, try_gcs, records_per_shard, bad_record_policy, synthetic_*).
        dataset: output directory: ``dataset.json`` plus ``<split>/`` shards. Its
            metadata repeats the facts later steps check: source name and
            version, classes, schema version, per-split counts, skips and shards.
    """
    import logging

    from components.config import DataConfig, section_from_json
    from components.ingest import ingest_dataset

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = section_from_json(DataConfig, data_config)
    info = ingest_dataset(config, dataset.path)

    splits = info["splits"]
    dataset.metadata.update(
        {
            "source_name": info["source"]["name"],
            "source_version": info["source"]["version"],
            "source_config": info["source"]["config"] or "",
            "schema_version": info["schema_version"],
            "classes": info["classes"],
            "bad_record_policy": info["bad_record_policy"],
            "splits": sorted(splits),
            "num_records": {split: entry["num_records"] for split, entry in splits.items()},
            "num_skipped": {split: entry["num_skipped"] for split, entry in splits.items()},
            "shards": {split: entry["shards"] for split, entry in splits.items()},
        }
    )
    for split, entry in splits.items():
        dataset.metadata[f"num_{split}_records"] = entry["num_records"]
