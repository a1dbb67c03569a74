module edgefaas.example/hello-image

go 1.21
