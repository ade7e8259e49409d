"""Ingest as an Apache Beam pipeline (``data.engine=beam``): DirectRunner here, Dataflow there.

The same steps as the local engine (components.data.ingest), as Beam transforms, with the
same functions: the sources (components.data.sources), the per-record check and class-table
mapping (``ingest.check_example``), the split placement, the record bytes
(``ingest.serialize_record``), dataset.json (``ingest.dataset_record``) and the
statistics (``statistics.StatisticsCollector``, merged by a ``CombineFn``, so they cost
no second read)::

    source ─► check + place ─┬─► totals per split, bad records (CombineFn)
                             ├─► positions by split ─► shard numbers ─┐
                             ├─► records by position ─────────────────┴─► CoGroupByKey
                             │       ─► GroupByKey (split, shard) ─► write shard
                             └─► statistics (CombineFn)

The launcher then checks that the shards hold exactly the records that were checked good
(a runner that drops records stops ingest), renames the shards and writes dataset.json.

Where examples come from: a folder or manifest is listed by the launcher, which writes
the list (paths only) to a work file that workers read in parallel and fetch the files
themselves; a prepared TFDS dataset is read shard by shard by workers, each of which makes
the builder again from the config (a builder object does not pickle).

What equals the local engine's output, for the same data and config: the keys of each
split, every record's bytes (so the decoded image and mask of each key), the class-pixel
counts, the fingerprints, the skipped records and the statistics. Records are written in
source order (a folder's sorted paths, a manifest's rows, TFDS's shard and record order),
``records_per_shard`` to a shard, so the shard files are byte for byte the local engine's
too; nothing depends on how many workers ran or in which order they finished.

Bad records: every record is checked; under the 'error' policy nothing is written and
ingest fails once naming them all (``ingest.raise_bad_records``).

Apache Beam is imported only here, inside functions (the ``beam`` extra): the local
engine and the demo never need it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import posixpath
import time
import uuid
from typing import Any

import numpy as np
import tensorflow as tf

from components.data import ingest, masks, sources, splits
from components.data import statistics as data_statistics
from components.data.sources import EmptySplitError, SourceExample
from components.platform import files
from components.platform.config import IGNORE_ID, BeamConfig, DataConfig
from components.platform.contracts import DatasetInfo, Statistics, StepInputs
from components.platform.retry import retry_transient

logger = logging.getLogger(__name__)

_WORK_FOLDER = ".beam-work"
_TOTALS, _SHARDS, _STATISTICS = "totals.json", "shards.json", "statistics.json"
_GCS_FUSE_PREFIX = "/gcs/"


def ingest_with_engine(data_config: DataConfig, output_dir: str, **kwargs: Any) -> dict[str, Any]:
    """Ingest with the configured engine (``data.engine``); both write the same dataset."""
    if data_config.engine == "beam":
        return ingest_dataset(data_config, output_dir, **kwargs)
    return ingest.ingest_dataset(data_config, output_dir, **kwargs)


class IngestInputs(StepInputs):
    """The source and how to read it; the Dataset directory to write."""

    data: DataConfig
    dataset_dir: str


def run(inputs: IngestInputs) -> DatasetInfo:
    """The ingest step: ``ingest_with_engine``, retried on a transient error.

    Shards are written under temporary names, so a repeat after a dropped download is safe.
    """
    info = retry_transient(
        lambda: ingest_with_engine(inputs.data, inputs.dataset_dir), what="ingest"
    )
    return DatasetInfo.from_dict(info)


# --- options -------------------------------------------------------------------------------


def worker_path(path: str, beam_config: BeamConfig) -> str:
    """The path as Dataflow workers see it: Vertex's ``/gcs/`` mount is ``gs://`` there."""
    if beam_config.runner == "DataflowRunner" and path.startswith(_GCS_FUSE_PREFIX):
        return "gs://" + path[len(_GCS_FUSE_PREFIX) :]
    return path


def pipeline_flags(beam_config: BeamConfig, output_dir: str) -> list[str]:
    """Command-line style Beam options for the configured runner.

    Raises:
        ValueError: Dataflow with an output folder its workers cannot reach (a local path).
    """
    flags = [f"--runner={beam_config.runner}"]
    if beam_config.runner == "DirectRunner":
        # Beam's FnApiRunner, which is what the DirectRunner runs a batch pipeline on,
        # named directly: Beam 2.77's DirectRunner first tries Prism, a Go binary it
        # downloads from GitHub, so a laptop online would run another engine than the one
        # tested (and offline each run waits for the failed download and leaves a
        # /tmp/beam-temp* folder behind).
        return [
            "--runner=FnApiRunner",
            f"--direct_num_workers={beam_config.direct_num_workers}",
            f"--direct_running_mode={beam_config.direct_running_mode}",
        ]
    # BeamConfig's validator already refused a Dataflow config without these.
    if not worker_path(output_dir, beam_config).startswith("gs://"):
        raise ValueError(
            f"ingest output {output_dir!r} is a local path; Dataflow workers write the shards "
            "and need a gs:// location (run the pipeline with a gs:// pipeline root)"
        )
    flags += [
        f"--project={beam_config.project}",
        f"--region={beam_config.region}",
        f"--temp_location={beam_config.temp_location}",
        f"--staging_location={beam_config.staging_location or beam_config.temp_location}",
        f"--max_num_workers={beam_config.max_num_workers}",
        "--autoscaling_algorithm=THROUGHPUT_BASED",
    ]
    if beam_config.sdk_container_image:
        # The image has petseg and Beam installed: nothing to stage, no SDK download.
        flags += [
            f"--sdk_container_image={beam_config.sdk_container_image}",
            "--sdk_location=container",
        ]
    if beam_config.machine_type:
        flags.append(f"--machine_type={beam_config.machine_type}")
    if beam_config.service_account_email:
        flags.append(f"--service_account_email={beam_config.service_account_email}")
    if beam_config.job_name:
        flags.append(f"--job_name={beam_config.job_name}")
    return flags


@contextlib.contextmanager
def _flush_by_size_only(beam_config: BeamConfig):
    """Runs the DirectRunner with its data plane flushing whole elements only.

    Beam 2.77's DirectRunner (multi_threading, and the runner side of multi_processing)
    also flushes every output stream once a second from a timer thread
    (``TimeBasedBufferingClosableOutputStream``; ``data_buffer_time_limit_ms``, default
    1000, and ``0`` in the environment config falls back to 1000). That flush takes the
    buffer and clears it without excluding the thread that is encoding into it, so an
    element written in between is dropped, or cut in two ("Invalid PaneInfoEncoding"
    when the halves land in different workers' partitions). Large elements under load
    widen the window: 1 to 5 of 687 photos went missing with 2 workers. The timer exists
    for streaming latency; a batch ingest loses nothing without it. Dataflow runs its
    own harness and is untouched.
    """
    if beam_config.runner != "DirectRunner":
        yield
        return
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    saved = worker_handlers.DATA_BUFFER_TIME_LIMIT_MS
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0  # read when the run builds its workers
    try:
        yield
    finally:
        worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = saved


def pipeline_options(beam_config: BeamConfig, output_dir: str):
    """The Beam PipelineOptions ingest runs with (what a Dataflow job request is made from)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions(pipeline_flags(beam_config, output_dir))


# --- per element ---------------------------------------------------------------------------


def _example_line(position: tuple[int, ...], example: SourceExample) -> str:
    return json.dumps(
        {
            "position": list(position),
            "key": example.key,
            "file_name": example.file_name,
            "split": example.split,
            "mask_name": example.mask_name,
            "image_uri": example.image_uri,
            "mask_uri": example.mask_uri,
            "label": example.label,
            "species": example.species,
            "problem": example.problem,
        }
    )


def _parse_example_line(line: str) -> tuple[tuple[int, ...], SourceExample]:
    row = json.loads(line)
    return tuple(row.pop("position")), SourceExample(**row)


_BUILDERS: dict[str, Any] = {}


def _read_tfds_shard(item: tuple[int, str, int], data_config: DataConfig):
    """Yields (position, example) of one shard of a prepared TFDS split, in record order.

    The builder is made again on the worker from the config (a builder object does not
    travel), once per worker process.
    """
    rank, split, shard = item
    cache_key = data_config.model_dump_json()
    if cache_key not in _BUILDERS:
        _BUILDERS[cache_key] = sources.get_builder(data_config)
    builder = _BUILDERS[cache_key]
    examples = sources.tfds_examples(builder, data_config, split, f"{split}[{shard}shard]")
    for offset, example in enumerate(examples):
        yield (rank, shard, offset), example


def _check(
    element: tuple[tuple[int, ...], SourceExample],
    table: masks.ClassTable,
    placement: ingest.SplitPlacement,
) -> tuple[tuple[int, ...], str, SourceExample, masks.CheckedRecord | str]:
    position, example = element
    return position, placement.place(example), example, ingest.check_example(example, table)


class _Totals:
    """Per split: records read and good, pixel counts, fingerprint; and the bad records."""

    def __init__(self) -> None:
        self.seen = dict.fromkeys(splits.SPLITS, 0)
        self.good = dict.fromkeys(splits.SPLITS, 0)
        self.pixel_counts = {split: np.zeros(256, np.int64) for split in splits.SPLITS}
        self.fingerprints = {split: splits.Fingerprint() for split in splits.SPLITS}
        self.bad: list[tuple[tuple[int, ...], dict[str, str]]] = []

    def to_json(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "good": self.good,
            "pixel_counts": {split: counts.tolist() for split, counts in self.pixel_counts.items()},
            "fingerprints": {
                split: [print_.total, print_.count] for split, print_ in self.fingerprints.items()
            },
            "bad": self.bad,
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> _Totals:
        totals = cls()
        totals.seen, totals.good = record["seen"], record["good"]
        for split in splits.SPLITS:
            totals.pixel_counts[split] = np.asarray(record["pixel_counts"][split], np.int64)
            print_ = totals.fingerprints[split]
            print_.total, print_.count = record["fingerprints"][split]
        totals.bad = [(tuple(position), entry) for position, entry in record["bad"]]
        return totals

    def merge(self, other: _Totals) -> _Totals:
        for split in splits.SPLITS:
            self.seen[split] += other.seen[split]
            self.good[split] += other.good[split]
            self.pixel_counts[split] += other.pixel_counts[split]
            self.fingerprints[split].merge(other.fingerprints[split])
        self.bad += other.bad
        return self


def _totals_combine_fn():
    import apache_beam as beam

    class TotalsCombineFn(beam.CombineFn):
        """Counts, pixel counts, fingerprints and bad records of every split, merged."""

        def create_accumulator(self):
            return _Totals()

        def add_input(self, totals, element):
            position, split, example, result = element
            totals.seen[split] += 1
            if isinstance(result, str):
                entry = {"file_name": example.file_name, "split": split, "reason": result}
                totals.bad.append((position, entry))
            else:
                totals.good[split] += 1
                totals.pixel_counts[split] += result.pixel_counts
                totals.fingerprints[split].add(result.digest)
            return totals

        def merge_accumulators(self, accumulators):
            merged = _Totals()
            for totals in accumulators:
                merged.merge(totals)
            return merged

        def extract_output(self, totals):
            totals.bad.sort(key=lambda item: item[0])
            return totals.to_json()

    return TotalsCombineFn()


def _statistics_combine_fn(class_names: list[str]):
    import apache_beam as beam

    class StatisticsCombineFn(beam.CombineFn):
        """The data statistics of every written record, merged from partial collectors."""

        def create_accumulator(self):
            return data_statistics.StatisticsCollector(class_names, IGNORE_ID, splits.SPLITS)

        def add_input(self, collector, element):
            _, split, example, checked = element
            ingest.add_to_statistics(collector, split, example, checked)
            return collector

        def merge_accumulators(self, accumulators):
            accumulators = iter(accumulators)
            merged = next(accumulators)
            for collector in accumulators:
                merged.merge(collector)
            return merged

        def compact(self, collector):
            for split in collector.accumulators:
                collector._flush(split)
            return collector

        def extract_output(self, collector):
            return collector.partial_result()

    return StatisticsCombineFn()


def _shard_numbers(keyed, records_per_shard: int):
    """(split, positions of its good records) → ((split, position), (shard, shard count)).

    Small elements (positions only); the records themselves are joined to their shard
    number by key.
    """
    split, positions = keyed
    ordered = sorted(positions)
    count = math.ceil(len(ordered) / records_per_shard)
    for rank, position in enumerate(ordered):
        yield (split, position), (rank // records_per_shard, count)


def _by_shard(joined):
    """A record with its shard number → ((split, shard, shard count), record)."""
    (split, _), groups = joined
    ((shard, count),) = list(groups["shard"])
    for element in groups["record"]:
        yield (split, shard, count), element


def _write_shard(keyed, output_dir: str, num_classes: int):
    """Writes one shard (its records in source order) under a temporary name.

    TensorFlow writes it (TFRecord framing); the launcher renames it through ``files``.
    """
    (split, index, count), elements = keyed
    final = posixpath.join(output_dir, split, ingest.schema.shard_file_name(split, index, count))
    temporary = final + ingest._INCOMPLETE_SUFFIX
    records = sorted(elements, key=lambda element: element[0])
    num_bytes = 0
    with tf.io.TFRecordWriter(temporary) as writer:
        for _, _, example, checked in records:
            serialized = ingest.serialize_record(example, checked, num_classes)
            writer.write(serialized)
            num_bytes += len(serialized)
    return [(split, index, final, len(records), num_bytes)]


def _save(value: Any, path: str) -> None:
    """Hands a combined result (plain JSON) from the workers to the launcher."""
    files.write_bytes(path, json.dumps(value).encode("utf-8"))


def _load_result(path: str) -> Any:
    return json.loads(files.read_bytes(path))


# --- the pipeline --------------------------------------------------------------------------


def _read_examples(pipeline, data_config: DataConfig, description: dict, stream, work_dir: str):
    import apache_beam as beam

    if data_config.source != "tfds":
        # Paths only: the launcher lists the source, workers fetch the files.
        listing = posixpath.join(work_dir, "examples.jsonl")
        lines = (
            _example_line((0, 0, index), example) + "\n" for index, example in enumerate(stream)
        )
        files.write_text(listing, "".join(lines))
        return (
            pipeline
            | "ListExamples" >> beam.io.ReadFromText(listing)
            | "ParseExamples" >> beam.Map(_parse_example_line)
        )
    del stream  # Workers read the prepared shards themselves, one shard each.
    builder = sources.prepare(data_config)
    shards = [
        (rank, split, shard)
        for rank, split in enumerate(description["splits"])
        for shard in range(builder.info.splits[split].num_shards)
    ]
    return (
        pipeline
        | "TfdsShards" >> beam.Create(shards)
        | "Spread" >> beam.Reshuffle()
        | "ReadShards" >> beam.FlatMap(_read_tfds_shard, data_config=data_config)
    )


def ingest_dataset(
    data_config: DataConfig, output_dir: str, *, statistics: bool = True, **unused: Any
) -> dict[str, Any]:
    """Reads the configured source and writes the Dataset directory with a Beam pipeline.

    Same arguments, result and errors as ``components.data.ingest.ingest_dataset`` (the
    local engine's ``progress_every`` and ``workers`` do not apply: Beam reports its own
    progress, and ``data.beam`` sets the workers).

    Raises:
        ImportError: Apache Beam is not installed (the ``beam`` extra).
        sources.SourceError: the source cannot be read as configured (named).
        ingest.BadRecordsError: bad records under the 'error' policy (all named).
        EmptySplitError: a split would have no records.
    """
    del unused
    try:
        import apache_beam as beam
    except ImportError:
        raise ImportError(
            "data.engine=beam needs Apache Beam: install petseg's beam extra "
            "(uv sync --extra beam, or pip install 'petseg[beam]')"
        ) from None
    ingest._check_policy(data_config.bad_record_policy, data_config.records_per_shard)
    beam_config = data_config.beam
    options = pipeline_options(beam_config, output_dir)
    output_dir = worker_path(output_dir, beam_config)
    table = masks.ClassTable.from_config(data_config)
    class_names = data_config.class_names
    description, stream = sources.examples(data_config)
    placement = ingest.SplitPlacement.for_source(data_config, description)
    records_per_shard = data_config.records_per_shard
    work_dir = posixpath.join(output_dir, f"{_WORK_FOLDER}-{uuid.uuid4().hex[:12]}")
    statistics_path = posixpath.join(output_dir, data_statistics.STATISTICS_FILE)
    started = time.monotonic()
    try:
        for split in splits.SPLITS:
            split_dir = posixpath.join(output_dir, split)
            files.remove(split_dir)
            files.makedirs(split_dir)
        files.makedirs(work_dir)
        logger.info(
            "Ingesting %s on Beam's %s; carving %s from train",
            sources.describe(data_config),
            beam_config.runner,
            sorted(placement.carved) or "nothing",
        )
        with _flush_by_size_only(beam_config), beam.Pipeline(options=options) as pipeline:
            examples = _read_examples(pipeline, data_config, description, stream, work_dir)
            checked = examples | "Check" >> beam.Map(_check, table=table, placement=placement)
            totals = checked | "Totals" >> beam.CombineGlobally(_totals_combine_fn())
            good = checked | "Good" >> beam.Filter(lambda element: not isinstance(element[3], str))
            # Under the 'error' policy with bad records the shards are written all the same
            # and removed below, before anything is renamed to a final name.
            shard_numbers = (
                good
                | "Positions" >> beam.Map(lambda element: (element[1], element[0]))
                | "PositionsBySplit" >> beam.GroupByKey()
                | "ShardNumbers"
                >> beam.FlatMap(_shard_numbers, records_per_shard=records_per_shard)
            )
            records = good | "KeyByPosition" >> beam.Map(
                lambda element: ((element[1], element[0]), element)
            )
            shards = (
                {"shard": shard_numbers, "record": records}
                | "JoinShardNumbers" >> beam.CoGroupByKey()
                | "KeyByShard" >> beam.FlatMap(_by_shard)
                | "GroupShards" >> beam.GroupByKey()
                | "WriteShards"
                >> beam.FlatMap(_write_shard, output_dir=output_dir, num_classes=len(class_names))
                | "ListShards" >> beam.combiners.ToList()
            )
            results = [("Totals", totals, _TOTALS), ("Shards", shards, _SHARDS)]
            if statistics:
                gathered = good | "Statistics" >> beam.CombineGlobally(
                    _statistics_combine_fn(class_names)
                )
                results.append(("Statistics", gathered, _STATISTICS))
            for name, collection, file_name in results:
                _ = collection | f"Save{name}" >> beam.Map(
                    _save, path=posixpath.join(work_dir, file_name)
                )
        totals = _Totals.from_json(_load_result(posixpath.join(work_dir, _TOTALS)))
        written = _load_result(posixpath.join(work_dir, _SHARDS))
        if totals.bad and data_config.bad_record_policy == "error":
            ingest.raise_bad_records([entry for _, entry in totals.bad], output_dir)
        seen = sum(totals.seen.values())
        for split in splits.SPLITS:
            if not totals.good[split]:
                if totals.seen[split]:
                    detail = f"all {totals.seen[split]} records were skipped"
                else:
                    detail = placement.empty_detail(split, seen) or "the source split is empty"
                raise EmptySplitError(f"split {split!r} has no usable records: {detail}")
        split_entries = {}
        for split in splits.SPLITS:
            shards = sorted(item for item in written if item[0] == split)
            in_shards = sum(item[3] for item in shards)
            if in_shards != totals.good[split]:  # A runner that drops or repeats records.
                raise RuntimeError(
                    f"Beam wrote {in_shards} records of split {split!r} but checked "
                    f"{totals.good[split]} good ones; ingest stopped rather than write a "
                    "wrong dataset (rerun, or use data.engine=local)"
                )
            final_paths = []
            for _, _, final, _, _ in shards:
                files.rename(final + ingest._INCOMPLETE_SUFFIX, final)
                final_paths.append(final)
            split_entries[split] = ingest.split_entry(
                output_dir,
                class_names,
                final_paths=final_paths,
                num_records=in_shards,
                num_bytes=sum(item[4] for item in shards),
                skipped=[
                    {"file_name": entry["file_name"], "reason": entry["reason"]}
                    for _, entry in totals.bad
                    if entry["split"] == split
                ],
                pixel_counts=totals.pixel_counts[split],
                fingerprint=totals.fingerprints[split].hexdigest(split),
            )
        info = ingest.dataset_record(data_config, description, placement.carved, split_entries)
        if statistics:
            partial = _load_result(posixpath.join(work_dir, _STATISTICS))
            record = data_statistics.complete_result(partial, info)
            Statistics.from_dict(record, statistics_path).write(statistics_path)
        else:
            ingest.write_statistics(None, info, statistics_path)
        ingest.finish_dataset(output_dir, info)
    except BaseException:
        for split in splits.SPLITS:
            ingest._remove_quietly(posixpath.join(output_dir, split))
        ingest._remove_quietly(statistics_path)
        raise
    finally:
        ingest._remove_quietly(work_dir)
    ingest.log_written(logger, split_entries, started, info)
    return info
