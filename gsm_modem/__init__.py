"""GSM modem: the AT-command driver, the SMS PDU codec and a modem emulator for tests."""
