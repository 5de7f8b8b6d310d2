"""The study store's logic and file I/O: importing, boxes, proposals, crop tables, uploads, the worklist."""
