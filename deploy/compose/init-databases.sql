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
