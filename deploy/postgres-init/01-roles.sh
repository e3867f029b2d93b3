#!/bin/sh
# First start of the PostgreSQL container: the roles and databases of GridPay
# and Temporal, with passwords from docker secrets.
set -eu
gridpay_pw="$(cat /run/secrets/gridpay_db_password)"
temporal_pw="$(cat /run/secrets/temporal_db_password)"
psql -v ON_ERROR_STOP=1 --username postgres <<SQL
CREATE ROLE gridpay LOGIN PASSWORD '${gridpay_pw}';
CREATE DATABASE gridpay OWNER gridpay;
CREATE ROLE temporal LOGIN CREATEDB PASSWORD '${temporal_pw}';
SQL
