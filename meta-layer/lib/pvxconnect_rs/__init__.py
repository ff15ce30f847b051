# Python helpers of the pv-xconnect-rs layer (added by conf/layer.conf's
# addpylib). Plain stdlib code, also imported by the repository's ci/ scripts.
BBIMPORTS = ["workspace"]
