"""SMDR: PBXs that print a record of each finished call (Panasonic KX-TDA/TDE/NS, Avaya
IP Office). The shared part reads the stream (serial port or TCP, either side
listening) and stores the calls; each PBX's package parses its own records.
"""
