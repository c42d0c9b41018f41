-- Login roles on each demo target database (used by `npm start` and docker-compose.yml).
-- breakglass_dba is registered as exempt; contractor_2019 was disabled long before any incident.
CREATE ROLE clerk_anna LOGIN PASSWORD 'anna';
CREATE ROLE clerk_ben LOGIN PASSWORD 'ben';
CREATE ROLE reporting LOGIN PASSWORD 'reporting';
CREATE ROLE app_backend LOGIN PASSWORD 'backend';
CREATE ROLE breakglass_dba LOGIN PASSWORD 'breakglass';
CREATE ROLE contractor_2019 NOLOGIN PASSWORD 'old';
