"""Deploy targets: where environments deploy to."""
