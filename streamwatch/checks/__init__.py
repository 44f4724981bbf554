"""streamwatch.checks"""
