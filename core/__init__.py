"""The keeper: headless scheduling engine of watchkeeper. Never imports textual."""
