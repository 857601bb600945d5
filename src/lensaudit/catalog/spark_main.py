"""Entry point for ``spark-submit`` (cluster runs of ``catalog build`` with the Spark engine).

    spark-submit --master yarn "$(python -m lensaudit.catalog.spark_main --where)" \\
        --config s3-mounted/paper4_parity.yaml

The master, executors and memory come from ``spark-submit``; the config's ``spark_master`` is
ignored. Sweep and output folders must be visible to every executor (a shared file system).
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lensaudit.catalog.spark_main", description=__doc__.splitlines()[0])
    ap.add_argument("--config", help="CatalogConfig YAML")
    ap.add_argument("--where", action="store_true", help="print this file's path (for spark-submit) and exit")
    a = ap.parse_args(argv)
    if a.where:
        print(__file__)
        return 0
    if not a.config:
        ap.error("--config is required")
    from lensaudit.catalog import CatalogConfig, build_catalog
    from lensaudit.catalog.engines import SparkEngine
    from lensaudit.config import load_config
    from lensaudit.utils.logs import setup_logging

    setup_logging(0)
    cfg = load_config(a.config, CatalogConfig, {"engine": "spark"})
    summary = build_catalog(cfg, engine=SparkEngine(master=None))
    print(json.dumps(summary, indent=2))
    return 0 if all(summary["verified"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
