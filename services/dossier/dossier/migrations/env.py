from chassis.migrate import run_env
from dossier.models import metadata

run_env(metadata)
