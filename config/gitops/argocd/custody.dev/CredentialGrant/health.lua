-- Argo CD health of a custody.dev CredentialGrant, from the conditions the controller sets
-- (docs/gitops.md). Healthy: issuing. Suspended: suspended (the kill switch) or waiting for an
-- approver. Degraded: cannot issue until someone fixes it (Stalled: source missing or not
-- grantable, role missing, a broad role without the approval its namespace asks for, kind not
-- issued). Progressing: not reconciled yet. A grant that is overdue for rotation, unused, or whose
-- role reaches beyond the step is still Healthy (it can issue); the message says so.
local hs = {status = "Progressing", message = "Waiting for the Custody controller"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.message = "The controller has not seen the latest spec yet"
  return hs
end
local ready, stalled, overdue, unused, broad
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then ready = c end
  if c.type == "Stalled" then stalled = c end
  if c.type == "RotationOverdue" then overdue = c end
  if c.type == "Unused" then unused = c end
  if c.type == "BroadAccess" then broad = c end
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
  return hs
end
if ready == nil then
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  if overdue ~= nil and overdue.status == "True" then
    hs.message = hs.message .. "; rotation overdue: " .. overdue.message
  end
  if unused ~= nil and unused.status == "True" then
    hs.message = hs.message .. "; unused: " .. unused.message
  end
  if broad ~= nil and broad.status == "True" then
    hs.message = hs.message .. "; broad access: " .. broad.message
  end
  return hs
end
if ready.reason == "Suspended" or ready.reason == "WaitingForApproval" then
  hs.status = "Suspended"
end
hs.message = ready.message
return hs
