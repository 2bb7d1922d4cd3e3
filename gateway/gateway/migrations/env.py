from chassis.migrate import run_env
from gateway.audit import metadata

run_env(metadata)
