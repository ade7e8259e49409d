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
    from components.failures import record_failures

    record_failures()  # an uncaught error names this task in the run-end report

    import logging

    from components.beam_ingest import ingest_with_engine
    from components.config import DataConfig, section_from_json
    from components.retry import retry_transient

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = section_from_json(DataConfig, data_config)
    # Shards are written under temporary names, so a repeat after a dropped download is safe.
    info = retry_transient(lambda: ingest_with_engine(config, dataset.path), what="ingest")

    splits = info["splits"]
    dataset.metadata.update(
        {
            "source_type": info["source"]["type"],
            "source_name": info["source"].get("name") or info["source"].get("path", ""),
            "source_version": info["source"].get("version", ""),
            "source_config": info["source"].get("config") or "",
            "schema_version": info["schema_version"],
            "classes": info["classes"],
            "ignore_id": info["ignore_id"],
            "fingerprint": info["fingerprint"]["dataset"],
            "split_fingerprints": info["fingerprint"]["splits"],
            "bad_record_policy": info["bad_record_policy"],
            "splits": sorted(splits),
            "num_records": {split: entry["num_records"] for split, entry in splits.items()},
            "num_skipped": {split: entry["num_skipped"] for split, entry in splits.items()},
            "shards": {split: entry["shards"] for split, entry in splits.items()},
        }
    )
    for split, entry in splits.items():
        dataset.metadata[f"num_{split}_records"] = entry["num_records"]
