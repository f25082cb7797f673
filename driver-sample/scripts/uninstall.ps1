# Unloads the minifilter if needed, then removes its package from the driver store with
# `pnputil /delete-driver ... /uninstall`, which for a primitive driver (Windows 10 1903 and later)
# also undoes its DefaultInstall section: the service goes. The test certificate stays; remove it
# with certlm.msc if you wish.
. "$PSScriptRoot\common.ps1"
Assert-Administrator

if (Test-FilterLoaded) { & (Join-Path $PSScriptRoot 'unload.ps1'); if ($LASTEXITCODE -ne 0) { exit 1 } }

Write-Step 'finding the package in the driver store'
$published = $null
$current = $null
foreach ($line in (& pnputil.exe /enum-drivers)) {
    if ($line -match '^\s*Published Name\s*:\s*(\S+)') { $current = $Matches[1] }
    if ($line -match '^\s*Original Name\s*:\s*fltportsample\.inf\s*$') { $published = $current }
}
if ($null -eq $published) {
    Stop-Step 'no fltportsample.inf package is in the driver store' "nothing to uninstall; if the service remains, run: sc.exe delete $ServiceName"
}
Invoke-Checked "pnputil /delete-driver $published /uninstall" "run 'pnputil /enum-drivers' and delete the fltportsample.inf entry by hand" `
    'pnputil.exe' @('/delete-driver', $published, '/uninstall', '/force')

& sc.exe query $ServiceName | Out-Null
if ($LASTEXITCODE -eq 0) { Stop-Step "the service $ServiceName still exists" "reboot (it may be marked for deletion), or run: sc.exe delete $ServiceName" }
Write-Host "$ServiceName is uninstalled." -ForegroundColor Green
