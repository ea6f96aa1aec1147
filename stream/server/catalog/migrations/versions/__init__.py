"""One file per catalog schema revision, oldest first by `down_revision`."""
