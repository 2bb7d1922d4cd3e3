-- One database per service (and one for the gateway's access audit).
-- `coordo migrate` would create them too; creating them here keeps that working
-- when the application's role is later given no CREATEDB right.
CREATE DATABASE coordo_identity;
CREATE DATABASE coordo_dossier;
CREATE DATABASE coordo_cercle;
CREATE DATABASE coordo_taches;
CREATE DATABASE coordo_documents;
CREATE DATABASE coordo_agenda;
CREATE DATABASE coordo_notify;
CREATE DATABASE coordo_gateway;
-- dossier's file list (tests/bench/README.md): no parallel workers for 10-row pages,
-- one plan per call for skewed holders. The service also sets them per transaction.
ALTER DATABASE coordo_dossier SET max_parallel_workers_per_gather = 0;
ALTER DATABASE coordo_dossier SET plan_cache_mode = force_custom_plan;
