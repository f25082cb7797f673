# Unloads the minifilter if needed, deletes its service (DefaultUninstall) and removes its package
# from the driver store. The test certificate stays; remove it with certlm.msc if you wish.
. "$PSScriptRoot\common.ps1"
Assert-Administrator

if (Test-FilterLoaded) { & (Join-Path $PSScriptRoot 'unload.ps1'); if ($LASTEXITCODE -ne 0) { exit 1 } }

$inf = Join-Path $SampleRoot 'driver\fltportsample.inf'
Write-Step 'deleting the service (DefaultUninstall)'
$setup = Start-Process -FilePath "$env:SystemRoot\System32\rundll32.exe" -Wait -PassThru `
    -ArgumentList @('setupapi.dll,InstallHinfSection', 'DefaultUninstall', '132', $inf)
if ($setup.ExitCode -ne 0) { Stop-Step "InstallHinfSection exited with $($setup.ExitCode)" "read the end of $env:SystemRoot\INF\setupapi.app.log" }
& sc.exe query $ServiceName | Out-Null
if ($LASTEXITCODE -eq 0) { Stop-Step "the service $ServiceName still exists" "reboot (it may be marked for deletion), or run: sc.exe delete $ServiceName" }

Write-Step 'removing the package from the driver store'
$published = $null
$current = $null
foreach ($line in (& pnputil.exe /enum-drivers)) {
    if ($line -match '^\s*Published Name\s*:\s*(\S+)') { $current = $Matches[1] }
    if ($line -match '^\s*Original Name\s*:\s*fltportsample\.inf\s*$') { $published = $current }
}
if ($null -ne $published) {
    Invoke-Checked "pnputil /delete-driver $published" "run 'pnputil /enum-drivers' and delete the fltportsample.inf entry by hand" `
        'pnputil.exe' @('/delete-driver', $published, '/force')
}
Write-Host "$ServiceName is uninstalled." -ForegroundColor Green
