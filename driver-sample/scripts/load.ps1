# Loads the installed minifilter (fltmc load) and shows it attached.
. "$PSScriptRoot\common.ps1"
Assert-Administrator
if (Test-FilterLoaded) { Write-Host "$ServiceName is already loaded." -ForegroundColor Green; exit 0 }

Invoke-Checked "loading $ServiceName (fltmc load)" `
    '0x80070002: not installed (.\install.ps1); 0x80070241 or 577: signature refused (test signing on? .\sign.ps1 again); 0xC0000034: Instances values missing (.\uninstall.ps1, .\install.ps1); see also Event Viewer > System' `
    'fltmc.exe' @('load', $ServiceName)
if (-not (Test-FilterLoaded)) { Stop-Step "fltmc load succeeded but 'fltmc filters' does not list $ServiceName" 'run "fltmc filters" and check the System event log' }
& fltmc.exe instances -f $ServiceName
Write-Host "$ServiceName is loaded: port \FltportSample is open to administrators." -ForegroundColor Green
