"""Independent implementations used to check mvds's wire compatibility."""
