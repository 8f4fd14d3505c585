"""The system exactness harness: one chain, five kinds of run, each compared with a clean one.

python -m tools.chaos [--customers 300] [--runs clean,interleaved,kill,broker,database]
                      [--json PATH] [--state-dir DIR] [--kafka-port P] [--mongo-port P]

Each run starts its own fresh Kafka, FerretDB and PostgreSQL (deploy/local/infra.sh, in its
own state dir and ports), replays the same sample chain under its disruption, waits until
every consumer group has caught up and the system is quiet, dumps every service's state and
every output topic canonically, and stops. Every run after the first is compared with the
clean one, collection by collection and topic by topic. See docs/infrastructure.md.
"""

from tools.chaos.harness import harness_config_json, run_harness
from tools.chaos.runs import RUN_KINDS, HarnessConfig, RunResult

__all__ = ["RUN_KINDS", "HarnessConfig", "RunResult", "harness_config_json", "run_harness"]
