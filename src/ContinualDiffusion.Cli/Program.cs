Console.WriteLine("cdiff");
