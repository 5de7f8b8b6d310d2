"""The DICOM node: the app as an AI node of a PACS (README "DICOM node").

- ``config``: peers and destinations (``AET@host:port``) from the settings;
- ``spool``: where received instances and source headers live (atomic writes);
- ``scp``: the Storage SCP run by ``manage.py dicom_listener`` (C-ECHO, C-STORE of CT from known peers);
- ``scheduler``: the listener's clock: closes deliveries that went quiet, re-queues due deliveries of results;
- ``received``: a closed delivery imported through the study store's importer, its scans listed for verdicts;
- ``answers``: a Prediction's findings (the one reader of its fields) and its SR and key images as files;
- ``sending``: C-STORE of the results to the destination, every attempt logged, retried with backoff;
- ``scu``: C-ECHO/C-STORE/C-FIND/C-GET/C-MOVE as a client; ``pull`` and ``dicomweb`` query and retrieve;
- ``status``: the node's queue and last activity for the home page.
"""
