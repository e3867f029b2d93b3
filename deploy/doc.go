// Package deploy holds the production deployment files (the image's
// Dockerfile, Temporal and PostgreSQL set-up scripts) and the test that loads
// the top-level docker-compose.yml with the Compose specification's own Go
// loader, since no Docker engine runs on development and CI machines.
package deploy
