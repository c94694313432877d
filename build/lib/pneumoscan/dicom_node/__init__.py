"""A DICOM node for a hospital's PACS: receive radiographs, predict, send results back.

A short chain of plain functions, shared by ``pneumoscan dicom-node`` (the Storage SCP)
and ``pneumoscan predict --dicom-out`` (the same objects, written to files):

- :mod:`~pneumoscan.dicom_node.intake`: what the node accepts, and the C-STORE status of
  what it refuses;
- :mod:`~pneumoscan.dicom_node.structured_report` and
  :mod:`~pneumoscan.dicom_node.heatmap_capture`: a prediction as a Comprehensive SR and a
  Secondary Capture heat map (highdicom), in the source's study;
- :mod:`~pneumoscan.dicom_node.sender`: C-STORE of the results, retried, never lost
  silently;
- :mod:`~pneumoscan.dicom_node.node`: the Storage SCP that ties them together.

Needs the ``dicom-node`` extra (pynetdicom, highdicom): ``pip install
'pneumoscan[onnx,dicom-node]'``. Patient and study identity are copied into the results
(the PACS files them by it) but never written to logs.
"""
