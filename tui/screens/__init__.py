"""The console's screens above the main one: questions (modal) and detail views."""
