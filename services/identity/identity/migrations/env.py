from chassis.migrate import run_env
from identity.models import metadata

run_env(metadata)
