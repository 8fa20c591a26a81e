"""Pure GATT decoders and normalisers of the BLE health devices, and the one registry of
the characteristics the home gateway reads (:mod:`edge.ble.gatt.registry`). No I/O."""
