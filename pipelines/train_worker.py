"""One training process under torchrun: the entry point the train flow starts with
`devices > 1` (several processes, DistributedDataParallel).

    torchrun --standalone --nproc_per_node 2 -m pipelines.train_worker \\
        RUN_DIR/train-config.json RUN_DIR [--mlflow-run-id ID]

Across several machines, start the same command on each, replacing `--standalone` with
the rendezvous arguments (docs/train.md):

    --nnodes 2 --rdzv_backend c10d --rdzv_endpoint HOST:29400 --rdzv_id ID --local_addr THIS_HOST

Every process runs the same loop; rank 0 logs to the MLflow run and writes the
checkpoints, and at the end writes `RUN_DIR/distributed-result.json` for the flow.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist

from pipelines.tracking import TrackingUnavailable
from pipelines.train import RESULT_FILE, MlflowProgress, TrainConfig
from tasks.train.checkpoints import TrainingError
from tasks.train.loop import Callbacks, Processes, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="the flow's TrainConfig as JSON")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--mlflow-run-id", help="log rank 0's progress to this run")
    args = parser.parse_args(argv)
    config = TrainConfig.model_validate_json(args.config.read_text())
    settings = config.loop_settings()
    # NCCL between GPUs; gloo between CPU processes (and for the tests).
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    try:
        processes = Processes.current()
        # One line per process: started by hand on several machines, this is where one sees
        # that they met, and which of them is rank 0 (it logs and writes the checkpoints).
        place = f"process {processes.rank} of {processes.world} (local {processes.local_rank})"
        print(f"{place} on {socket.gethostname()}", file=sys.stderr, flush=True)
        callbacks = Callbacks()
        if processes.is_main and args.mlflow_run_id:
            logger = logging.getLogger("gpt2lab.train")
            progress = MlflowProgress(args.mlflow_run_id, config, settings.tokens, logger)
            callbacks = progress.callbacks()
        try:
            result = train(settings, args.run_dir, callbacks)
            if processes.is_main and args.mlflow_run_id:
                progress.close()  # waits for a tracking server that is away, for a while
        except (TrainingError, TrackingUnavailable) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        if processes.is_main:
            record = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}
            (args.run_dir / RESULT_FILE).write_text(json.dumps(record))
        return 0
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
