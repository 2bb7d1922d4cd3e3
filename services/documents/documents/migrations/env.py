from chassis.migrate import run_env
from documents.models import metadata

run_env(metadata)
