# Stages the built driver (fltportsample.sys from the vcxproj) with its INF in scripts\out\package,
# makes the catalog with Inf2Cat, and signs the .sys and the .cat with the test certificate.
#   .\sign.ps1 [-Configuration Release|Debug] [-Platform x64|ARM64]
param(
    [ValidateSet('Release', 'Debug')][string]$Configuration = 'Release',
    [ValidateSet('x64', 'ARM64')][string]$Platform = 'x64'
)
. "$PSScriptRoot\common.ps1"

$cert = Get-TestCertificate
if ($null -eq $cert) { Stop-Step "no '$CertSubject' certificate in LocalMachine\My" 'run .\new-test-cert.ps1 first (elevated)' }

$driverDir = Join-Path $SampleRoot 'driver'
$sys = Join-Path $driverDir "$Platform\$Configuration\fltportsample.sys"
if (-not (Test-Path $sys)) {
    Stop-Step "$sys does not exist" "build it: msbuild driver-sample\driver\fltportsample.vcxproj /p:Configuration=$Configuration /p:Platform=$Platform"
}

Write-Step "staging $sys and fltportsample.inf in $PackageDir"
Remove-Item -Recurse -Force -Path $PackageDir -ErrorAction SilentlyContinue
New-Item -ItemType Directory -Force -Path $PackageDir | Out-Null
Copy-Item $sys, (Join-Path $driverDir 'fltportsample.inf') -Destination $PackageDir

$os = if ($Platform -eq 'x64') { '10_X64' } else { '10_RS3_ARM64' }
Invoke-Checked 'making the catalog (Inf2Cat)' 'read the Inf2Cat errors above: they name the INF line at fault' `
    (Find-KitTool 'Inf2Cat.exe') @("/driver:$PackageDir", "/os:$os", '/uselocaltime')

$signtool = Find-KitTool 'signtool.exe'
foreach ($file in 'fltportsample.sys', 'fltportsample.cat') {
    $path = Join-Path $PackageDir $file
    Invoke-Checked "signing $file" 'check that the certificate has its private key (re-create it with .\new-test-cert.ps1)' `
        $signtool @('sign', '/fd', 'sha256', '/sm', '/s', 'My', '/sha1', $cert.Thumbprint, $path)
    Invoke-Checked "verifying the signature of $file" 'the certificate is not trusted: run .\new-test-cert.ps1 again' `
        $signtool @('verify', '/pa', $path)
}
Write-Host "Signed package in $PackageDir. Next: .\install.ps1" -ForegroundColor Green
