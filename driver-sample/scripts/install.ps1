# Installs the signed package from scripts\out\package through its INF's DefaultInstall section
# (driver store, service fltportsample, Instances values). Does not load it: .\load.ps1 does.
. "$PSScriptRoot\common.ps1"
Assert-Administrator
Assert-TestSigning

$inf = Join-Path $PackageDir 'fltportsample.inf'
foreach ($file in 'fltportsample.inf', 'fltportsample.sys', 'fltportsample.cat') {
    if (-not (Test-Path (Join-Path $PackageDir $file))) { Stop-Step "$file is missing from $PackageDir" 'run .\sign.ps1 first' }
}

Write-Step "installing $inf (DefaultInstall)"
$setup = Start-Process -FilePath "$env:SystemRoot\System32\rundll32.exe" -Wait -PassThru `
    -ArgumentList @('setupapi.dll,InstallHinfSection', 'DefaultInstall', '132', $inf)
if ($setup.ExitCode -ne 0) {
    Stop-Step "InstallHinfSection exited with $($setup.ExitCode)" "read the end of $env:SystemRoot\INF\setupapi.app.log and setupapi.dev.log"
}

# rundll32 reports little: check what the INF should have produced.
Write-Step 'checking the service and its Instances values'
& sc.exe query $ServiceName | Out-Null
if ($LASTEXITCODE -ne 0) {
    Stop-Step "the service $ServiceName was not created" "read the end of $env:SystemRoot\INF\setupapi.app.log; a catalog or signature problem shows there (run .\sign.ps1 again)"
}
$key = "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName"
if (-not (Test-Path "$key\Instances") -and -not (Test-Path "$key\Parameters\Instances")) {
    Stop-Step 'the Instances values are missing, so FltRegisterFilter would fail with 0xC0000034' 'run .\uninstall.ps1, then .\install.ps1 again'
}
Write-Host "Installed. Next: .\load.ps1" -ForegroundColor Green
