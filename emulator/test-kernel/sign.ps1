# Signs the WDK build of test-kernel.sys (test-kernel.vcxproj) with the sample's test certificate
# and puts it where emulator/test-kernel/test-kernel.js loads it from (emulator\build\test-kernel.sys):
# the filter-port, fuzz and workers suites then load it into the real filter manager, one service
# per test kernel. Needs test signing on and the certificate of driver-sample\scripts\new-test-cert.ps1.
# Unverified on Windows: it has not run.
#   .\sign.ps1 [-Configuration Release|Debug] [-Platform x64|ARM64]
param(
    [ValidateSet('Release', 'Debug')][string]$Configuration = 'Release',
    [ValidateSet('x64', 'ARM64')][string]$Platform = 'x64'
)
. "$PSScriptRoot\..\..\driver-sample\scripts\common.ps1"

$cert = Get-TestCertificate
if ($null -eq $cert) { Stop-Step "no '$CertSubject' certificate in LocalMachine\My" 'run driver-sample\scripts\new-test-cert.ps1 first (elevated)' }

$sys = Join-Path $PSScriptRoot "$Platform\$Configuration\test-kernel.sys"
if (-not (Test-Path $sys)) {
    Stop-Step "$sys does not exist" "build it: msbuild emulator\test-kernel\test-kernel.vcxproj /p:Configuration=$Configuration /p:Platform=$Platform"
}
$target = Join-Path $PSScriptRoot '..\build'
New-Item -ItemType Directory -Force -Path $target | Out-Null
$signed = Join-Path $target 'test-kernel.sys'
Copy-Item $sys $signed -Force

$signtool = Find-KitTool 'signtool.exe'
Invoke-Checked 'signing test-kernel.sys' 'check that the certificate has its private key (re-create it with new-test-cert.ps1)' `
    $signtool @('sign', '/fd', 'sha256', '/sm', '/s', 'My', '/sha1', $cert.Thumbprint, $signed)
Invoke-Checked 'verifying the signature of test-kernel.sys' 'the certificate is not trusted: run new-test-cert.ps1 again' `
    $signtool @('verify', '/pa', $signed)
Write-Host "Signed $signed" -ForegroundColor Green
