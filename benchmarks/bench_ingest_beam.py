"""Ingest images/s: the Beam engine (DirectRunner, 2 workers) against the local engine.

Both engines ingest the same folder dataset of real-size photos, in the same run,
alternating, best of ``--repeats`` each, and must write the same dataset (same
fingerprint). By default the photos are the real Oxford-IIIT Pet ones in
``../shared/data/oxford_real`` (read in place, never copied); ``--generate N`` writes N
drawn pets at ``--image-size`` instead (what the smoke test does).

Prints one row per engine: records, seconds, images/s, ratio to the local engine and
whether the fingerprint equals the local engine's. The Beam figure includes the
pipeline's start-up (a few seconds on the DirectRunner), which a short run pays in
full; on Dataflow, start-up is minutes of worker provisioning and the figure that
matters is images/s per worker times workers.

Usage::

    python benchmarks/bench_ingest_beam.py                       # 687 Oxford photos
    python benchmarks/bench_ingest_beam.py --modes multi_threading multi_processing
    python benchmarks/bench_ingest_beam.py --generate 200 --image-size 500
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REAL_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "oxford_real"


def _config(path: str, masks_folder: str, engine: str, workers: int, mode: str, fields: dict):
    from components.platform.config import BeamConfig, DataConfig

    return DataConfig(
        **{
            **fields,
            "source": "folder",
            "path": path,
            "masks_folder": masks_folder,
            "records_per_shard": 256,
            "engine": engine,
            "ingest_workers": workers,
            "beam": BeamConfig(
                direct_num_workers=workers,
                direct_running_mode=mode if engine == "beam" else "multi_threading",
            ),
        }
    )


def _timed(config, output: Path) -> tuple[float, dict]:
    from components.data.beam_ingest import ingest_with_engine

    shutil.rmtree(output, ignore_errors=True)
    started = time.perf_counter()
    info = ingest_with_engine(config, str(output))
    return time.perf_counter() - started, info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(REAL_PHOTOS), help="folder with images/")
    parser.add_argument("--masks-folder", default="trimaps", help="mask folder of --source")
    parser.add_argument("--generate", type=int, default=0, help="write N drawn pets instead")
    parser.add_argument("--image-size", type=int, default=500, help="long side (--generate)")
    parser.add_argument("--workers", type=int, default=2, help="Beam workers and local threads")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["multi_threading"],
        choices=["multi_threading", "multi_processing"],
        help="DirectRunner running modes to measure",
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs per engine (best kept)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    workdir = Path(tempfile.mkdtemp(prefix="bench_ingest_beam_"))
    try:
        fields: dict = {}
        source, masks_folder = args.source, args.masks_folder
        if args.generate:
            from components.data import synthetic_pets

            written = synthetic_pets.write_folder_dataset(
                str(workdir / "photos"), args.generate, image_size=args.image_size
            )
            source, masks_folder = written.root, "masks"
            fields = {
                key: value
                for key, value in written.data_config.items()
                if key not in ("source", "path", "masks_folder")
            }
        elif not Path(source, "images").is_dir():
            parser.error(f"--source {source} has no images/ folder (or use --generate N)")

        engines = [("local", "threads")] + [("beam", mode) for mode in args.modes]
        best: dict[tuple[str, str], tuple[float, dict]] = {}
        for _ in range(args.repeats):
            for engine, mode in engines:
                config = _config(source, masks_folder, engine, args.workers, mode, fields)
                try:
                    seconds, info = _timed(config, workdir / f"out_{engine}_{mode}")
                except RuntimeError as error:  # the engine's own check caught lost records
                    print(f"{engine} {mode}: failed: {error}")
                    continue
                if (engine, mode) not in best or seconds < best[engine, mode][0]:
                    best[engine, mode] = (seconds, info)

        local_seconds, local_info = best["local", "threads"]
        records = sum(entry["num_records"] for entry in local_info["splits"].values())
        megapixels = "real photos" if not args.generate else f"{args.image_size} px drawn pets"
        print(
            f"ingest of {records} {megapixels} from {source}, {args.workers} workers, "
            f"best of {args.repeats}"
        )
        print(
            f"{'engine':<34} {'records':>8} {'seconds':>8} {'img/s':>8} "
            f"{'speed vs local':>15} {'same data':>10}"
        )
        for engine, mode in engines:
            if (engine, mode) not in best:
                continue
            seconds, info = best[engine, mode]
            count = sum(entry["num_records"] for entry in info["splits"].values())
            name = "local (threads)" if engine == "local" else f"beam DirectRunner {mode}"
            same = info["fingerprint"]["dataset"] == local_info["fingerprint"]["dataset"]
            print(
                f"{name:<34} {count:>8} {seconds:>8.2f} {count / seconds:>8.1f} "
                f"{local_seconds / seconds:>14.2f}x {same!s:>10}"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
