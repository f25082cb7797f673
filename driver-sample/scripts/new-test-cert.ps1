# Creates a code-signing test certificate in LocalMachine\My and trusts it (LocalMachine\Root and
# LocalMachine\TrustedPublisher), so that sign.ps1 can sign the sample and Windows, with test
# signing on, loads it. Reuses the certificate when it already exists. Run elevated.
. "$PSScriptRoot\common.ps1"
Assert-Administrator

$cert = Get-TestCertificate
if ($null -ne $cert -and $cert.NotAfter -gt (Get-Date).AddDays(7)) {
    Write-Step "reusing the test certificate $($cert.Thumbprint)"
} else {
    Write-Step "creating the test certificate '$CertSubject'"
    try {
        $cert = New-SelfSignedCertificate -Type CodeSigningCert -Subject $CertSubject `
            -CertStoreLocation Cert:\LocalMachine\My -KeyUsage DigitalSignature -KeyExportPolicy Exportable `
            -HashAlgorithm sha256 -NotAfter (Get-Date).AddYears(2)
    } catch {
        Stop-Step "New-SelfSignedCertificate failed: $($_.Exception.Message)" 'run on Windows 10 or later, elevated'
    }
}

New-Item -ItemType Directory -Force -Path $OutDir | Out-Null
$cerFile = Join-Path $OutDir 'fltport-sample-test.cer'
Write-Step "exporting the public certificate to $cerFile"
try { Export-Certificate -Cert $cert -FilePath $cerFile -Force | Out-Null }
catch { Stop-Step "Export-Certificate failed: $($_.Exception.Message)" "check that $OutDir is writable" }

foreach ($store in 'Root', 'TrustedPublisher') {
    Write-Step "trusting it in LocalMachine\$store"
    try { Import-Certificate -FilePath $cerFile -CertStoreLocation "Cert:\LocalMachine\$store" | Out-Null }
    catch { Stop-Step "Import-Certificate into LocalMachine\$store failed: $($_.Exception.Message)" 'run elevated; a policy may forbid adding roots (managed machines): use a VM' }
}

Assert-TestSigning
Write-Host "Test certificate ready: $($cert.Thumbprint). Next: .\sign.ps1" -ForegroundColor Green
