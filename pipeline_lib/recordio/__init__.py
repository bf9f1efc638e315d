"""MXNet RecordIO for object detection, one module per job:

* :mod:`.format`: the bytes (constants, record framing, image record header, ``.idx`` text)
* :mod:`.labels`: detection labels (any header/object width) as numpy arrays
* :mod:`.reader`: ``.rec`` iteration, ``.idx``/``.lst``, the random-access dataset
* :mod:`.convert`: image+JSON -> RecordIO (``odp convert recordio``), over :mod:`.write_engine`
* :mod:`.export`: RecordIO -> image+JSON
* :mod:`.cache_key`: the content hash that keys the DAG's conversion cache
* :mod:`.errors`: ``RecordIOError`` (malformed files), ``ConversionError`` (bad datasets)

Import from the submodules; this package imports nothing, so ``odp convert recordio`` loads
only the standard-library converter.
"""
