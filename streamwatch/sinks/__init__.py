"""streamwatch.sinks"""
