from agenda.models import metadata
from chassis.migrate import run_env

run_env(metadata)
