"""streamwatch.sources"""
