# Installs the signed package from scripts\out\package the way Microsoft documents for primitive
# drivers (Windows 10 1903 and later): `pnputil /add-driver ... /install` puts it in the driver
# store and processes its DefaultInstall section (service fltportsample, Instances values).
# Does not load it: .\load.ps1 does.
. "$PSScriptRoot\common.ps1"
Assert-Administrator
Assert-TestSigning

$inf = Join-Path $PackageDir 'fltportsample.inf'
foreach ($file in 'fltportsample.inf', 'fltportsample.sys', 'fltportsample.cat') {
    if (-not (Test-Path (Join-Path $PackageDir $file))) { Stop-Step "$file is missing from $PackageDir" 'run .\sign.ps1 first' }
}

Invoke-Checked "installing $inf (pnputil /add-driver /install)" `
    "read the end of $env:SystemRoot\INF\setupapi.dev.log; a catalog or signature problem shows there (run .\sign.ps1 again)" `
    'pnputil.exe' @('/add-driver', $inf, '/install')

# Check what the INF should have produced.
Write-Step 'checking the service and its Instances values'
& sc.exe query $ServiceName | Out-Null
if ($LASTEXITCODE -ne 0) {
    Stop-Step "the service $ServiceName was not created" "read the end of $env:SystemRoot\INF\setupapi.dev.log"
}
$key = "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName"
if (-not (Test-Path "$key\Instances") -and -not (Test-Path "$key\Parameters\Instances")) {
    Stop-Step 'the Instances values are missing, so FltRegisterFilter would fail with 0xC0000034' 'run .\uninstall.ps1, then .\install.ps1 again'
}
Write-Host "Installed. Next: .\load.ps1" -ForegroundColor Green
