"""Small shared helpers (atomic files, hashing, seeding)."""
