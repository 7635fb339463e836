-- Argo CD health check for gonka.ai/v1alpha1 NetworkNode (the network node of a Gonka host: chain
-- node, api, tmkms and proxy, managed by gonka-operator). Lua 5.1 with the base and table libraries
-- only, so it runs from argocd-cm without resource.customizations.useOpenLibs.gonka.ai_NetworkNode.
--
-- Healthy      Ready=True for the current generation (node/api pod and proxy ready). The host's steps
--              outside Git are added to the message but leave it Healthy: PermissionsGranted=False (run
--              the grant-ml-ops-permissions command the message gives, with the cold key) and
--              ActiveInEpoch=False (a new host joins at the next epoch's PoC, up to a day). Unknown host
--              conditions (ReportUnavailable, <CheckId>Unavailable, NotReported) change nothing.
-- Degraded     Degraded=True (e.g. ApplyFailed: a child object the API server refused), Ready=False
--              for a failure reason, or KeysReady=False (a key missing or mismatched on the api: the
--              message says which; waiting does not fix it).
-- Progressing  no status yet, a generation the operator has not observed, Ready=Unknown, Ready=False
--              while waiting (pods starting, the api syncing the chain before it opens its ports), or
--              ChainSynced=False (CatchingUp, BlockSyncFailed: the chain node is behind).
local failures = {
  Rejected = true, IdConflict = true, InsufficientGPU = true, Unschedulable = true, ApplyFailed = true,
  AdminUnreachable = true, NetworkNodeNotFound = true, NodeFailed = true, PreloadFailed = true,
}

local function condition(status, ctype)
  for _, c in ipairs(status.conditions or {}) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function text(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

local hs = {status = "Progressing", message = "Waiting for the operator to reconcile the NetworkNode"}
local status = obj.status or {}

if obj.status == nil then
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local degraded = condition(status, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = text({reason = degraded.reason or "Degraded", message = degraded.message})
  return hs
end

local ready = condition(status, "Ready")
if ready == nil then
  return hs
end
if ready.status == "True" then
  local keys = condition(status, "KeysReady")
  if keys ~= nil and keys.status == "False" then
    hs.status = "Degraded"
    hs.message = "KeysReady: " .. text({reason = keys.reason or "KeysMissing", message = keys.message})
    return hs
  end
  local chain = condition(status, "ChainSynced")
  if chain ~= nil and chain.status == "False" then
    hs.message = "ChainSynced: " .. text({reason = chain.reason or "NotSynced", message = chain.message})
    return hs
  end
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  for _, ctype in ipairs({"PermissionsGranted", "ActiveInEpoch"}) do
    local c = condition(status, ctype)
    if c ~= nil and c.status == "False" then
      hs.message = hs.message .. "; " .. ctype .. ": " .. text({reason = c.reason or "False", message = c.message})
    end
  end
  return hs
end
if ready.status ~= "False" then
  -- Unknown: the operator is waiting for something; its message says what
  if ready.message ~= nil and ready.message ~= "" then
    hs.message = ready.message
  end
  return hs
end
if failures[ready.reason] then
  hs.status = "Degraded"
end
hs.message = text({reason = ready.reason or "NotReady", message = ready.message})
return hs
