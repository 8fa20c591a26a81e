"""Who and what the platform knows: tenants, teams, users, patients, home gateways and devices;
provisioning, privacy (GDPR) and retention."""
