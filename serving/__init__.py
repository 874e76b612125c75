"""FastAPI service that serves a slotfill checkpoint (never imports Lightning)."""
