"""PBX adapters: each turns one PBX interface's protocol into core call events.

Nothing outside this package knows a PBX's vocabulary (channels, AMI events, ...).
"""
