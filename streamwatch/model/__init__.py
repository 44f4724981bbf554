"""streamwatch.model"""
