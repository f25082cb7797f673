# Unloads the minifilter (fltmc unload): its unload routine closes the port and every agent's connection.
. "$PSScriptRoot\common.ps1"
Assert-Administrator
if (-not (Test-FilterLoaded)) { Write-Host "$ServiceName is not loaded." -ForegroundColor Green; exit 0 }

Invoke-Checked "unloading $ServiceName (fltmc unload)" 'make sure no command prompt or program is inside a watched operation, then retry; a stuck unload needs a reboot' `
    'fltmc.exe' @('unload', $ServiceName)
if (Test-FilterLoaded) { Stop-Step "$ServiceName is still listed by 'fltmc filters'" 'retry in a few seconds; if it persists, reboot' }
Write-Host "$ServiceName is unloaded." -ForegroundColor Green
