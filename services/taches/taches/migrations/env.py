from chassis.migrate import run_env
from taches.models import metadata

run_env(metadata)
