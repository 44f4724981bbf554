"""streamwatch.train"""
