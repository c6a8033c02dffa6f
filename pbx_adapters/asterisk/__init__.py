"""Asterisk: the AMI adapter (panoramisk), call tracking, click-to-dial and AGI."""
