-- Orthanc: send every new chest radiograph (CR, DX) to pneumoscan's DICOM node.
-- orthanc.json: "LuaScripts": ["route-to-pneumoscan.lua"], and pneumoscan declared under
-- "DicomModalities" as "pneumoscan" (see the README). The node's results (an SR and a
-- Secondary Capture, modalities SR and OT) are not routed again.
function OnStoredInstance(instanceId, tags, metadata, origin)
  local modality = tags['Modality']
  if modality == 'CR' or modality == 'DX' then
    SendToModality(instanceId, 'pneumoscan')
  end
end
