"""Operating the appliance: backups, restores and the doctor (docs/operations.md)."""
